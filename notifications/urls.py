from django.urls import path

from notifications import views

app_name = "notifications"
urlpatterns = [
    path("email/unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("dev/outbox/", views.outbox, name="outbox"),
    path("dev/outbox/<int:message_id>/", views.outbox, name="outbox_message"),
]
