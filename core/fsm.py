"""django-fsm, the one way: every model's state machine runs its transitions through `run_transition`, on an
`FSMModelMixin` whose `refresh_from_db` is safe when threads refresh at once; `saving_changes` saves what a
transition changed."""

import copy
import functools
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import models
from django_fsm import FSMModelMixin as _FSMModelMixin
from django_fsm import TransitionNotAllowed

from core import rows
from core.errors import InvalidTransition


class FSMModelMixin(_FSMModelMixin):
    """django-fsm-2's mixin switches `protected` off on the field object (shared by every instance, in every
    thread) for the duration of the reload and back on afterwards. The ASGI server runs each request in its own
    thread, so one request could switch protection back on while another was mid-reload, which then failed with
    "Direct state modification is not allowed" (a 500 on `POST /api/v1/driver/availability`).

    The descriptor only refuses to overwrite a state the instance already holds, so this version forgets the
    instance's own protected values and reloads them, leaving the shared field untouched.
    """

    def refresh_from_db(self, using=None, fields=None, from_queryset=None):
        protected = self._get_protected_fsm_fields()
        if fields is None:
            # What Django would reload by default: every field not deferred (computed before forgetting any).
            deferred = self.get_deferred_fields()
            fields = [f.attname for f in self._meta.concrete_fields if f.attname not in deferred]
        for name in protected & set(fields):
            self.__dict__.pop(name, None)
        models.Model.refresh_from_db(self, using=using, fields=fields, from_queryset=from_queryset)


def refusal(transition) -> str:
    """Why a bound transition cannot run from its object's current state, in words for the API's 409: the
    transition's `custom["refused"]` (formatted with `state`), else "You cannot pick up a delivery that is
    offered" (the transition's name is its verb)."""
    meta = transition._django_fsm
    instance = transition.__self__
    state = meta.field.get_state(instance)
    custom = next(iter(meta.transitions.values())).custom
    if "refused" in custom:
        return custom["refused"].format(state=state)
    return f"You cannot {transition.__name__.replace('_', ' ')} a {instance._meta.verbose_name} that is {state}."


def run_transition(transition, *args, **kwargs):
    """Run a bound django-fsm transition (`run_transition(delivery.pick_up)`): the one place where a transition
    the current state does not allow becomes `InvalidTransition`. Saving and auditing are the caller's."""
    try:
        return transition(*args, **kwargs)
    except TransitionNotAllowed as exc:
        raise InvalidTransition(refusal(transition)) from exc


@contextmanager
def saving_changes(instance: models.Model) -> Iterator[None]:
    """Save the fields of `instance` changed inside the block, and only those, when it ends without raising:
    `with saving_changes(offer): run_transition(offer.accept)`. A hot row's UPDATE then sets the few columns a
    transition changes, not the whole row (the SQL built, quoted and sent was most of a save's CPU). What the
    block changes is compared, not listed, so a field set by the transition or by code run in the block cannot be
    left out; a field set before the block is not saved by it."""
    before = _values(instance)
    yield
    changed = [name for name, value in _values(instance).items() if name not in before or value != before[name]]
    rows.update_fields(instance, changed)


def _values(instance: models.Model) -> dict:
    """The instance's loaded field values (a deferred field is not read). JSON values are copied, so one changed in
    place is still told apart from the value it had."""
    loaded = instance.__dict__
    return {
        name: copy.deepcopy(value) if isinstance(value := loaded[name], dict | list) else value
        for name in _attnames(type(instance))
        if name in loaded
    }


@functools.cache
def _attnames(model: type[models.Model]) -> tuple[str, ...]:
    return tuple(field.attname for field in model._meta.concrete_fields if not field.primary_key)
