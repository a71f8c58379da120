"""`FSMModelMixin` whose `refresh_from_db` is safe when threads refresh at once.

django-fsm-2's mixin switches `protected` off on the field object (shared by every instance, in every thread)
for the duration of the reload and back on afterwards. The ASGI server runs each request in its own thread,
so one request could switch protection back on while another was mid-reload, which then failed with
"Direct state modification is not allowed" (a 500 on `POST /api/v1/driver/availability`).

The descriptor only refuses to overwrite a state the instance already holds, so this version forgets the
instance's own protected values and reloads them, leaving the shared field untouched.
"""

from django.db import models
from django_fsm import FSMModelMixin as _FSMModelMixin


class FSMModelMixin(_FSMModelMixin):
    def refresh_from_db(self, using=None, fields=None, from_queryset=None):
        protected = self._get_protected_fsm_fields()
        if fields is None:
            # What Django would reload by default: every field not deferred (computed before forgetting any).
            deferred = self.get_deferred_fields()
            fields = [f.attname for f in self._meta.concrete_fields if f.attname not in deferred]
        for name in protected & set(fields):
            self.__dict__.pop(name, None)
        models.Model.refresh_from_db(self, using=using, fields=fields, from_queryset=from_queryset)
