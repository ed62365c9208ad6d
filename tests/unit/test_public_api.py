import json
import subprocess
import sys

import ainative


def test_all_is_sorted_and_resolves():
    assert ainative.__all__ == sorted(ainative.__all__)
    for name in ainative.__all__:
        assert getattr(ainative, name) is not None, name


def test_unknown_attribute_raises_attribute_error():
    try:
        ainative.not_a_thing  # noqa: B018
    except AttributeError as exc:
        assert "not_a_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_is_fast_and_light():
    code = ("import sys, time; t = time.perf_counter(); import ainative; "
            "dt = time.perf_counter() - t; import json; "
            "print(json.dumps({'s': dt, 'mods': [m for m in ('ray', 'torch', 'ray.serve', "
            "'kubernetes', 'pyarrow') if m in sys.modules]}))")
    best = None
    for _ in range(3):  # best of three: the machine may be busy
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout)
        assert result["mods"] == [], f"import ainative pulled in {result['mods']}"
        best = result["s"] if best is None else min(best, result["s"])
    assert best < 0.5, f"import ainative took {best:.3f} s"


