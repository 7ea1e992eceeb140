import pytest


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    """A local Ray instance on 2 CPUs, one per test module."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp_path_factory.mktemp("ray")),
             log_to_driver=False)
    yield ray
    ray.shutdown()
