from django import forms

from orders.addresses import (
    COUNTRY_CHOICES,
    AddressInvalid,
    address_city,
    address_line,
    address_postal_code,
)
from orders.payments import CARD_NUMBER_ERROR, card_number_digits


class CardNumberInput(forms.TextInput):
    """Never written back into a page: a form shown again (a refused card, stock that changed)
    keeps everything else typed, and asks for the card again."""

    def format_value(self, value):
        return None


class CheckoutForm(forms.Form):
    # autocomplete tokens (WHATWG autofill) let browsers and password managers fill the form.
    email = forms.EmailField(
        max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
    name = forms.CharField(
        max_length=200, widget=forms.TextInput(attrs={"autocomplete": "shipping name"})
    )
    line1 = forms.CharField(
        label="Street and number",
        max_length=200,
        widget=forms.TextInput(attrs={"autocomplete": "shipping address-line1"}),
    )
    city = forms.CharField(
        max_length=100, widget=forms.TextInput(attrs={"autocomplete": "shipping address-level2"})
    )
    postal_code = forms.CharField(
        label="Postal code",
        max_length=20,
        widget=forms.TextInput(attrs={"autocomplete": "shipping postal-code"}),
    )
    country = forms.ChoiceField(
        choices=COUNTRY_CHOICES,
        initial="NL",
        widget=forms.Select(attrs={"autocomplete": "shipping country"}),
        error_messages={"invalid_choice": "Choose a country we ship to from the list."},
    )
    card_number = forms.CharField(
        label="Card number",
        max_length=23,
        widget=CardNumberInput(attrs={"autocomplete": "cc-number", "inputmode": "numeric"}),
    )
    # Consent for the one optional email: unticked unless the shopper ticks it.
    remind_me = forms.BooleanField(
        required=False,
        initial=False,
        label="Email me a reminder if I leave without finishing (at most one a week)",
    )
    token = forms.CharField(widget=forms.HiddenInput)

    def clean_card_number(self):
        digits = card_number_digits(self.cleaned_data["card_number"])
        if digits is None:
            raise forms.ValidationError(CARD_NUMBER_ERROR)
        return digits

    def clean_line1(self):
        return _address_part(address_line, self.cleaned_data["line1"])

    def clean_city(self):
        return _address_part(address_city, self.cleaned_data["city"])

    def clean(self):
        cleaned = super().clean()
        country, postal_code = cleaned.get("country"), cleaned.get("postal_code")
        if country and postal_code:  # its shape depends on the country
            try:
                cleaned["postal_code"] = address_postal_code(postal_code, country=country)
            except AddressInvalid as exc:
                self.add_error("postal_code", str(exc))
        return cleaned


def _address_part(check, value: str) -> str:
    try:
        return check(value)
    except AddressInvalid as exc:
        raise forms.ValidationError(str(exc)) from None
