from django.urls import path

from . import views

urlpatterns = [
    path("forgot", views.forgot, name="forgot"),
    path("recover/<str:token>", views.recover, name="recover"),
]
