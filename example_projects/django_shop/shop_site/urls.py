"""URLs of the example shop."""

from django.contrib.auth import views as auth_views
from django.urls import path
from shop import api, views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(template_name="shop/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("order/", views.place_order, name="order"),
    path("orders/<str:order_id>/", views.order_placed, name="order-placed"),
    path("api/reorder/", api.reorder, name="api-reorder"),
]
