"""The portal's date and time formats: one for every page, long or short, and dd/mm/yyyy as the
manuals write dates. French, Dutch and German take them as they are; English spells the month
instead (``en/formats.py``). Dates are typed as dd/mm/yyyy in every language
(``portal.forms.DateInput``); dashes or dots between the parts, and ISO, are accepted too."""

DATE_FORMAT = SHORT_DATE_FORMAT = "d/m/Y"
DATETIME_FORMAT = SHORT_DATETIME_FORMAT = "d/m/Y H:i"
TIME_FORMAT = "H:i"
MONTH_DAY_FORMAT = "j F"
YEAR_MONTH_FORMAT = "F Y"
FIRST_DAY_OF_WEEK = 1
DATE_INPUT_FORMATS = ["%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y-%m-%d"]
DATETIME_INPUT_FORMATS = ["%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"]
