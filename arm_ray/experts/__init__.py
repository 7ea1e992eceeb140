"""Expert pools fine-tuned from one base: SFT on the offline world's oracle episodes (`sft`), the builds' cache
stamps (`cache`), and their scores, task vectors and gate (`scoring`). The toy pools (`arm_ray.toy`) and the
pretrained SmolLM2 pool (`arm_ray.pretrained`) are built from these."""
