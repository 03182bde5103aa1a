from django.urls import path

from accounts import views

urlpatterns = [
    path("login/", views.login_page, name="login"),
    path("register/", views.register_page, name="register"),
    path("password/", views.password_change_page, name="password_change"),
    path("password/reset/", views.password_reset_page, name="password_reset"),
    path("password/reset/sent/", views.password_reset_sent_page, name="password_reset_done"),
    path("password/reset/<uidb64>/<token>/", views.password_reset_confirm_page, name="password_reset_confirm"),
    path("password/reset/done/", views.password_reset_complete_page, name="password_reset_complete"),
    path("logout/", views.logout_page, name="logout"),
]
