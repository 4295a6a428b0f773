"""The panel's URLs: only the recovery pages in this example."""

from django.urls import include, path

urlpatterns = [path("", include("recovery.urls"))]
