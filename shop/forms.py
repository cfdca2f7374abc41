from django import forms

from shop.cart import MAX_QUANTITY


class CartQuantityForm(forms.Form):
    quantity = forms.IntegerField(
        min_value=0,
        max_value=MAX_QUANTITY,
        error_messages={
            "required": "Enter a quantity.",
            "invalid": "Enter a quantity as a whole number.",
            "min_value": "A quantity cannot be negative.",
            "max_value": f"Choose at most {MAX_QUANTITY}.",
        },
    )
