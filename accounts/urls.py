from django.urls import path

from accounts import views

urlpatterns = [
    path("login/", views.login_page, name="login"),
    path("register/", views.register_page, name="register"),
    path("password/", views.password_change_page, name="password_change"),
    path("logout/", views.logout_page, name="logout"),
]
