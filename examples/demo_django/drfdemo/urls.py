from django.urls import path

from ratewarden.enforcer.django import metrics_view

from . import views

urlpatterns = [
    path("healthz", views.healthz),
    path("v1/items", views.Items.as_view()),
    path("v1/items/<int:item_id>", views.Item.as_view()),
    path("v1/search", views.Search.as_view()),
    path("v1/login", views.Login.as_view()),
    path("metrics", metrics_view),  # Prometheus (exempt in the policy)
]
