import inspect
import pickle

import pytest

from ainative import errors

ALL = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.AinativeError)]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_survives_pickling_with_details(cls):
    err = cls("what failed, observed 3, set timeout_s", field="timeout_s", value=3)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert str(back) == str(err)
    assert back.details == {"field": "timeout_s", "value": 3}
    assert back.field == "timeout_s"


def test_tree_shape():
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.InfeasibleError, errors.PlacementError)
    assert issubclass(errors.PlacementTimeoutError, errors.PlacementError)
    assert issubclass(errors.KubeRayValidationError, errors.ConfigError)
    for cls in ALL:
        assert cls.__name__ in errors.__doc__, f"{cls.__name__} missing from the tree drawing"
