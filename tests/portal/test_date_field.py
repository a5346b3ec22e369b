"""The portal's date box (portal.forms.DateField): typed day first in every language, the
calendar bounded by min and max, and a date that is not one kept as typed with an error that
says how to write it (issue 12)."""

from __future__ import annotations

from datetime import date

import pytest
from django import forms
from django.utils import translation

from portal.forms import DateField, DateInput


class SearchForm(forms.Form):
    day = DateField(required=False, widget=DateInput(attrs={"min": date(2026, 1, 1)}))


@pytest.mark.parametrize(
    "typed", ["05/06/2024", "5/6/2024", "05-06-2024", "05.06.2024", "2024-06-05"]
)
@pytest.mark.parametrize("language", ["en", "nl", "fr", "de"])
def test_a_typed_date_is_read_day_first_in_every_language(typed, language):
    with translation.override(language):
        form = SearchForm({"day": typed})

        assert form.is_valid(), form.errors
    assert form.cleaned_data["day"] == date(2024, 6, 5)


def test_a_month_first_date_is_refused_with_the_format_to_use_and_kept_as_typed():
    form = SearchForm({"day": "06/31/2024"})

    assert not form.is_valid()
    assert form.errors["day"] == ["Enter a date as dd/mm/yyyy, or pick one."]
    assert 'value="06/31/2024"' in str(form["day"])


def test_the_box_shows_the_date_day_first_and_bounds_only_the_calendar():
    html = str(SearchForm(initial={"day": date(2026, 3, 4)})["day"])

    assert 'type="text" name="day" value="04/03/2026"' in html
    assert 'placeholder="dd/mm/yyyy"' in html
    # The calendar is bounded; the typed box is not (the form checks what is typed).
    assert 'type="date" class="date-input-picker"' in html and 'min="2026-01-01"' in html
    assert html.count("min=") == 1


def test_the_placeholder_spells_the_format_in_the_page_language():
    with translation.override("nl"):
        assert 'placeholder="dd/mm/jjjj"' in str(SearchForm()["day"])
    with translation.override("fr"):
        assert 'placeholder="jj/mm/aaaa"' in str(SearchForm()["day"])
