from django.urls import path

from auctions import views

urlpatterns = [
    path("", views.session_list, name="sessions"),
    path("sessions/<uuid:session_id>/", views.session_detail, name="session"),
    path("sessions/<uuid:session_id>/results/", views.session_results, name="session-results"),
    path("me/bids/", views.my_bids, name="my-bids"),
    path("products/<int:product_id>/picture", views.product_picture, name="product-picture"),
]
