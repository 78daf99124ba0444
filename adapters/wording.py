"""The wording people read, in their language: pages and confirmation mail share one catalogue.

The catalogues live in ``adapters/translations`` (gettext ``.po``/``.mo``), so that the core's
confirmation mail and the web pages (through Flask-Babel) translate from the same source.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

from babel.support import NullTranslations, Translations

TRANSLATIONS_DIR = str(files("adapters") / "translations")


@lru_cache(maxsize=8)
def load_translations(lang: str) -> NullTranslations:
    return Translations.load(TRANSLATIONS_DIR, [lang, "en"])
