from django import forms

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
    country = forms.CharField(
        max_length=60,
        initial="NL",
        widget=forms.TextInput(attrs={"autocomplete": "shipping country"}),
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

    def clean_country(self):
        country = self.cleaned_data["country"].strip()
        if len(country) < 2:
            raise forms.ValidationError("Enter a country name or its two-letter code.")
        return country
