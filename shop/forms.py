from django import forms

from shop.cart import MAX_QUANTITY


class CartQuantityForm(forms.Form):
    quantity = forms.IntegerField(min_value=0, max_value=MAX_QUANTITY)
