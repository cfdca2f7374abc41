"""The countries the shop ships to (ISO 3166-1 alpha-2 codes) and what a plausible shipping address
looks like in each: read by the checkout form and the API alike, so both refuse the same input."""

import re

# code: (name, postal code pattern, an example). Patterns match the code as it is written there,
# after trimming, upper-casing and single spaces; a country prefix ("LV-1050") is allowed where
# the post office prints one.
SHIPPING_COUNTRIES: dict[str, tuple[str, str, str]] = {
    "AT": ("Austria", r"\d{4}", "1010"),
    "BE": ("Belgium", r"\d{4}", "1000"),
    "BG": ("Bulgaria", r"\d{4}", "1000"),
    "HR": ("Croatia", r"\d{5}", "10000"),
    "CY": ("Cyprus", r"\d{4}", "1010"),
    "CZ": ("Czechia", r"\d{3} ?\d{2}", "110 00"),
    "DK": ("Denmark", r"\d{4}", "1050"),
    "EE": ("Estonia", r"\d{5}", "10111"),
    "FI": ("Finland", r"\d{5}", "00100"),
    "FR": ("France", r"\d{5}", "75001"),
    "DE": ("Germany", r"\d{5}", "10115"),
    "GR": ("Greece", r"\d{3} ?\d{2}", "105 57"),
    "HU": ("Hungary", r"\d{4}", "1051"),
    "IE": ("Ireland", r"[AC-FHKNPRTV-Y]\d[\dW] ?[\dAC-FHKNPRTV-Y]{4}", "D02 X285"),
    "IT": ("Italy", r"\d{5}", "00184"),
    "LV": ("Latvia", r"(LV-)?\d{4}", "LV-1050"),
    "LT": ("Lithuania", r"(LT-)?\d{5}", "LT-01100"),
    "LU": ("Luxembourg", r"(L-)?\d{4}", "L-1648"),
    "MT": ("Malta", r"[A-Z]{3} ?\d{4}", "VLT 1117"),
    "NL": ("Netherlands", r"[1-9]\d{3} ?[A-Z]{2}", "1017 GA"),
    "NO": ("Norway", r"\d{4}", "0150"),
    "PL": ("Poland", r"\d{2}-\d{3}", "00-950"),
    "PT": ("Portugal", r"\d{4}-\d{3}", "1100-148"),
    "RO": ("Romania", r"\d{6}", "010011"),
    "SK": ("Slovakia", r"\d{3} ?\d{2}", "811 01"),
    "SI": ("Slovenia", r"(SI-)?\d{4}", "1000"),
    "ES": ("Spain", r"\d{5}", "28013"),
    "SE": ("Sweden", r"\d{3} ?\d{2}", "111 52"),
    "CH": ("Switzerland", r"\d{4}", "8001"),
    "GB": ("United Kingdom", r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}", "SW1A 1AA"),
}
COUNTRY_CHOICES = sorted(
    ((code, name) for code, (name, _, _) in SHIPPING_COUNTRIES.items()), key=lambda c: c[1]
)
_BY_NAME = {name.casefold(): code for code, (name, _, _) in SHIPPING_COUNTRIES.items()}
_LETTERS = re.compile(r"[^\W\d_]")


class AddressInvalid(ValueError):
    """One part of an address is not plausible; ``str()`` says what to type instead."""


def _tidy(value: str) -> str:
    return " ".join(value.split())


def address_country(value: str) -> str:
    """The ISO code of a country the shop ships to, from its code or its English name."""
    typed = _tidy(value)
    code = typed.upper() if typed.upper() in SHIPPING_COUNTRIES else _BY_NAME.get(typed.casefold())
    if code is None:
        raise AddressInvalid(
            "We ship to the countries of the European Union, Norway, Switzerland and the United "
            "Kingdom: choose one, or give its two-letter code (NL, DE, FR…)."
        )
    return code


def address_country_name(code: str) -> str:
    """The country's English name for pages; the stored text itself if it is not a known code."""
    return SHIPPING_COUNTRIES.get(code, (code, "", ""))[0]


def address_postal_code(value: str, *, country: str) -> str:
    """The postal code, trimmed and upper-cased, if it has the country's shape."""
    code = _tidy(value).upper()
    name, pattern, example = SHIPPING_COUNTRIES[country]
    if not re.fullmatch(pattern, code):
        raise AddressInvalid(f"Enter a postal code as written in {name}, such as {example}.")
    return code


def address_line(value: str) -> str:
    """A street and number: at least three characters, two of them letters."""
    line = _tidy(value)
    if len(line) < 3 or len(_LETTERS.findall(line)) < 2:
        raise AddressInvalid("Enter the street and house number, such as Kerkstraat 1.")
    return line


def address_city(value: str) -> str:
    city = _tidy(value)
    if len(_LETTERS.findall(city)) < 2:
        raise AddressInvalid("Enter the town or city.")
    return city
