"""STAND-IN for EDPS (not EDPS): a strict stub of the EDPS 1.7.x workflow builder API as documented
in ../shared/docs/eso-interfaces.md §3.2, and of the two entry points public workflow tests use:
``edps.generator.workflow_manager.WorkflowManager(None).create_workflow(module)`` (tasks with
``name``, ``command``, ``main_input.name``, ``grouping_keywords``, ``min_group_size``) and
``edps.generator.classif_rule.BaseClassificationRule.is_classified(header)`` (header: a mapping of
EDPS keyword names to values). It only records what a workflow builds, so that tests can check facts
that hold regardless of EDPS (recipe names, PRO CATGs, parameters, keywords). It rejects any name or
method outside that documented surface. It cannot check EDPS's association behaviour."""
from __future__ import annotations

import sys
import types

RULES, SOURCES, TASKS = [], [], []


class BaseClassificationRule:
    """edps.generator.classif_rule.BaseClassificationRule: is_classified(header)."""

    def is_classified(self, header) -> bool:
        if callable(self.match):
            return bool(self.match(header))
        return all(header.get(k) == v for k, v in self.match.items())


class Rule(BaseClassificationRule):
    def __init__(self, name, match):
        if not isinstance(name, str) or not (isinstance(match, dict) or callable(match)):
            raise TypeError("classification_rule(name: str, dict | callable)")
        self.name, self.match = name, match
        RULES.append(self)


class _Strict:
    """Builder base: only the methods defined on the subclass exist."""

    def build(self):
        return self


class DataSource(_Strict):
    def __init__(self, names):
        self.names, self.rules, self.grouping, self.setup, self.match, self.min_group = list(names), [], [], [], [], 1
        SOURCES.append(self)

    def with_classification_rule(self, *rules):
        assert all(isinstance(r, Rule) for r in rules), "classification rules expected"
        self.rules += rules
        return self

    def with_grouping_keywords(self, kws):
        self.grouping += list(kws)
        return self

    def with_setup_keywords(self, kws):
        self.setup += list(kws)
        return self

    def with_min_group_size(self, n):
        self.min_group = int(n)
        return self

    def with_match_keywords(self, kws, time_range=None, level=None):
        self.match.append((list(kws), time_range, level))
        return self

    def with_match_function(self, fn, time_range=None, level=None):
        assert callable(fn)
        return self


class Task(_Strict):
    def __init__(self, name):
        self.name, self.recipe, self.main_input, self.associated, self.dynamic, self.meta = name, None, None, [], {}, []
        self.description = ""
        TASKS.append(self)

    def with_recipe(self, name):
        self.recipe = name
        return self

    def with_main_input(self, src):
        assert isinstance(src, (DataSource, Task))
        self.main_input = src
        return self

    def with_associated_input(self, src, rules=None, min_ret=1, max_ret=1, condition=None, match_rules=None):
        assert isinstance(src, (DataSource, Task)) and all(isinstance(r, Rule) for r in rules or [])
        assert condition is None or callable(condition)
        self.associated.append(dict(source=src, rules=list(rules or []), min_ret=min_ret, max_ret=max_ret,
                                    condition=condition))
        return self

    def with_dynamic_parameter(self, name, fn):
        assert callable(fn)
        self.dynamic[name] = fn
        return self

    def with_meta_targets(self, targets):
        self.meta += list(targets)
        return self

    def with_description(self, text):
        self.description = text
        return self

    def with_condition(self, fn):
        assert callable(fn)
        return self


def get_parameter(params, name):
    return params[name]


class _BuiltTask:
    """What the stub's create_workflow exposes of a task (the attributes public tests read)."""

    def __init__(self, t: Task):
        self.name, self.command = t.name, t.recipe
        self.main_input = types.SimpleNamespace(name=t.main_input.names[0])
        self.grouping_keywords = list(t.main_input.grouping)
        self.min_group_size = t.main_input.min_group


class WorkflowManager:
    """edps.generator.workflow_manager.WorkflowManager(config).create_workflow(module): the module's tasks."""

    def __init__(self, config=None):
        self.config = config

    def create_workflow(self, module):
        tasks = [v for v in vars(module).values() if isinstance(v, Task)]
        if not tasks:
            raise ValueError(f"no tasks in workflow module {module.__name__}")
        return types.SimpleNamespace(tasks=[_BuiltTask(t) for t in tasks])


def module() -> types.ModuleType:
    """A fresh `edps` module object exposing exactly the stubbed names."""
    RULES.clear(), SOURCES.clear(), TASKS.clear()
    m = types.ModuleType("edps", "STAND-IN for EDPS (tests/edps_stub.py), not EDPS")
    m.classification_rule = Rule
    m.data_source = DataSource
    m.task = Task
    m.get_parameter = get_parameter
    for name in ("SAME_NIGHT", "ONE_DAY", "TWO_DAYS", "ONE_WEEK", "TWO_WEEKS", "ONE_MONTH", "QUARTERLY",
                 "IN_THE_PAST", "UNLIMITED"):
        setattr(m, name, name)
    for name in ("SCIENCE", "QC1_CALIB", "QC0", "CALCHECKER", "IDP"):
        setattr(m, name, name)

    def __getattr__(name):
        raise AttributeError(f"edps stub: '{name}' is not part of the documented EDPS builder API")
    m.__getattr__ = __getattr__
    return m


def install(monkeypatch) -> types.ModuleType:
    """Put the stub in sys.modules as edps, edps.generator.workflow_manager and .classif_rule."""
    m = module()
    gen = types.ModuleType("edps.generator", "STAND-IN (tests/edps_stub.py)")
    wm = types.ModuleType("edps.generator.workflow_manager", "STAND-IN (tests/edps_stub.py)")
    cr = types.ModuleType("edps.generator.classif_rule", "STAND-IN (tests/edps_stub.py)")
    wm.WorkflowManager, cr.BaseClassificationRule = WorkflowManager, BaseClassificationRule
    m.generator, gen.workflow_manager, gen.classif_rule = gen, wm, cr
    for name, mod in (("edps", m), ("edps.generator", gen), ("edps.generator.workflow_manager", wm),
                      ("edps.generator.classif_rule", cr)):
        monkeypatch.setitem(sys.modules, name, mod)
    return m
