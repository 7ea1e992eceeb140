from arm_ray.roles.cli import main

raise SystemExit(main())
