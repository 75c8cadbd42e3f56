"""URLs of the shop. Everything under /catalog/ is cached by the section middleware."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "store"

urlpatterns = [
    path("", views.home, name="home"),
    path("category/<int:pk>/", views.category_detail, name="category"),
    path("product/<int:pk>/", views.product_detail, name="product"),
    path("catalog/", views.catalog, name="catalog"),
    path("catalog/sellers/<int:pk>/", views.seller_detail, name="seller"),
]
