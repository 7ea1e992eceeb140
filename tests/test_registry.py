"""One resolver for every dotted name a config may hold, one error format."""

import pytest

from arm_ray.errors import ConfigError
from arm_ray.registry import Registry, resolve


def test_resolve_names_the_field_and_the_reason():
    assert resolve("arm_ray.selection:jaccard", "x").__name__ == "jaccard"
    with pytest.raises(ConfigError, match=r"^operators\[1\]\.method: cannot import 'no_pkg\.mod:f' "
                                          r"\(ModuleNotFoundError: No module named 'no_pkg'\)$"):
        resolve("no_pkg.mod:f", "operators[1].method")
    with pytest.raises(ConfigError, match=r"^prepare\.call: cannot import 'arm_ray\.selection:nope' "
                                          r"\(module 'arm_ray\.selection' has no 'nope'\)$"):
        resolve("arm_ray.selection:nope", "prepare.call")
    with pytest.raises(ConfigError, match="is not a 'package.module:name' string"):
        resolve("arm_ray.selection:", "prepare.call")


def test_registry_is_lazy_and_takes_dotted_names():
    reg = Registry("widget", {"jac": "arm_ray.selection:jaccard", "broken": "no_pkg.mod:Thing"})
    assert reg.get("jac").__name__ == "jaccard"  # the broken entry is never imported
    assert reg.get("arm_ray.selection:mean_aos").__name__ == "mean_aos"
    with pytest.raises(ConfigError, match=r"^w\.x: unknown widget 'nope'; known: jac, broken \(or a"):
        reg.get("nope", "w.x")
    with pytest.raises(ConfigError, match=r"^widget: cannot import 'no_pkg\.mod:Thing'"):
        reg.get("broken")


def test_every_config_extension_point_uses_it(perturbed_pool):
    from arm_ray.config import parse_config
    from arm_ray.prepare import prepare
    from tests.conftest import tiny_config

    cfg = tiny_config(perturbed_pool, operators=[{"name": "mine", "method": "no_pkg.ops:merge"}])
    with pytest.raises(ConfigError, match=r"operators\[0\] \(mine\)\.method: cannot import 'no_pkg\.ops:merge'"):
        prepare(parse_config(cfg))
