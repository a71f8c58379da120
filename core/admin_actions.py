"""Admin actions that run a domain action once per selected row. Shared by the delivery, driver and
escalation consoles so every bulk action reports failures the same way and asks for a note the same way."""

from collections.abc import Callable

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse

from core.errors import DomainError


class Skipped(Exception):
    """Raised by an `apply_each` callback when there was nothing to do for a row (not an error)."""


# Rows named in one message at most: a bulk action over 200 rows refused for one reason is one line, not 200.
NAMED_ROWS = 10


def apply_each(modeladmin, request, rows, apply: Callable, *, done: str, label: Callable = str) -> None:
    """Call `apply(row)` for each row. Each call is its own transaction (the domain actions open one), so a
    refused row is reported with its reason and changes nothing, while the others go through. A row the
    callback skips is reported as a warning and not counted as done. Rows refused or skipped for the same
    reason share one message."""
    rows = list(rows)
    succeeded = 0
    reported: dict[tuple[int, str], list[str]] = {}
    for row in rows:
        try:
            apply(row)
        except DomainError as exc:
            reported.setdefault((messages.ERROR, str(exc.detail)), []).append(label(row))
        except Skipped as exc:
            reported.setdefault((messages.WARNING, str(exc)), []).append(label(row))
        else:
            succeeded += 1
    for (level, reason), unsorted in reported.items():
        labels = sorted(unsorted)
        named = ", ".join(labels[:NAMED_ROWS]) + (
            f" and {len(labels) - NAMED_ROWS} more" if len(labels) > NAMED_ROWS else ""
        )
        modeladmin.message_user(request, f"{named}: {reason}", level)
    if succeeded:
        modeladmin.message_user(request, f"{done}: {succeeded} of {len(rows)}.", messages.SUCCESS)


class NoteForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=2000)


def _note_or_form_page(
    modeladmin, request, queryset, *, title: str, note_label: str, submit: str, label: Callable = str
):
    """An intermediate page asking for a note before a bulk action. Returns the note once the page was
    submitted with one, else the page (a TemplateResponse) for the action to return."""
    form = NoteForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        return form.cleaned_data["note"]
    form.fields["note"].label = note_label
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "form": form,
        "objects": [(row.pk, label(row)) for row in queryset],
        "action": request.POST["action"],
        "submit": submit,
        "opts": modeladmin.model._meta,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/relay/action_note.html", context)


def apply_each_with_note(
    modeladmin,
    request,
    queryset,
    apply: Callable,
    *,
    title: str,
    note_label: str,
    submit: str,
    done: str,
    label: Callable = str,
):
    """A bulk action that needs a note (a reason, what was done): the page asking for it until one is submitted,
    then `apply(row, note)` for each row as `apply_each` does. The action returns what this returns."""
    note = _note_or_form_page(
        modeladmin, request, queryset, title=title, note_label=note_label, submit=submit, label=label
    )
    if not isinstance(note, str):
        return note
    apply_each(modeladmin, request, queryset, lambda row: apply(row, note), done=done, label=label)
    return None
