"""Every public function and class of myconv says what it takes, returns and raises, and its
example runs (doctest, with torch and myconv imported)."""

import doctest
import inspect

import pytest
import torch

import myconv

PUBLIC = [name for name in myconv.__all__ if callable(getattr(myconv, name))]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_api_is_documented_and_its_examples_run(name):
    obj = getattr(myconv, name)
    doc = inspect.getdoc(obj) or ""
    assert doc, f"myconv.{name} has no docstring"
    if name != "cuda_compiled":  # (a one-line query without arguments)
        assert "Example" in doc, f"myconv.{name} has no example"
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(obj, f"myconv.{name}", globs={"torch": torch, "myconv": myconv}):
        runner.run(test)
    assert runner.failures == 0, f"myconv.{name}'s example failed"
