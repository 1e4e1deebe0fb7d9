import pytest

from fastreid_ms.utils.registry import Registry


def test_register_get_and_unknown_lists_names():
    reg = Registry("THING")

    @reg.register()
    def alpha(cfg):
        return "a"

    @reg.register(name="beta_two")
    class Beta:
        pass

    reg.register(len, name="length")
    assert reg.get("alpha") is alpha and reg.get("beta_two") is Beta and reg.get("length") is len
    assert "alpha" in reg and reg.names() == ["alpha", "beta_two", "length"]
    with pytest.raises(KeyError) as err:
        reg.get("alpah")
    msg = str(err.value)
    assert "THING" in msg and "alpha, beta_two, length" in msg and "Did you mean 'alpha'" in msg


def test_duplicate_name_rejected():
    reg = Registry("THING")
    reg.register(len, name="x")
    reg.register(len, name="x")  # the same object again is harmless (module re-import)
    with pytest.raises(KeyError, match="already registered"):
        reg.register(max, name="x")
