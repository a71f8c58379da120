"""django-fsm, the one way: every model's state machine runs its transitions through `run_transition`, on an
`FSMModelMixin` whose `refresh_from_db` is safe when threads refresh at once."""

from django.db import models
from django_fsm import FSMModelMixin as _FSMModelMixin
from django_fsm import TransitionNotAllowed

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
    transition's `custom["refused"]` (formatted with `state`), else "A delivery that is offered cannot be
    picked up"."""
    meta = transition._django_fsm
    instance = transition.__self__
    state = meta.field.get_state(instance)
    custom = next(iter(meta.transitions.values())).custom
    if "refused" in custom:
        return custom["refused"].format(state=state)
    return f"A {instance._meta.verbose_name} that is {state} cannot be {transition.__name__.replace('_', ' ')}."


def run_transition(transition, *args, **kwargs):
    """Run a bound django-fsm transition (`run_transition(delivery.pick_up)`): the one place where a transition
    the current state does not allow becomes `InvalidTransition`. Saving and auditing are the caller's."""
    try:
        return transition(*args, **kwargs)
    except TransitionNotAllowed as exc:
        raise InvalidTransition(refusal(transition)) from exc
