"""Every REST route of the work: merchants', drivers' and ops' (API.md). Every driver route is here, the
location pings included: their view lives in drivers/api.py (it needs nothing from deliveries), the others in
deliveries/api/driver.py."""

from django.urls import path, register_converter

from core.inputs import AnyCaseUUIDConverter
from deliveries.api import driver, merchant, ops, tracking
from drivers import api as drivers_api

register_converter(AnyCaseUUIDConverter, "id")

urlpatterns = [
    path("deliveries", merchant.DeliveryListCreateView.as_view(), name="deliveries"),
    path("deliveries/<id:pk>", merchant.DeliveryDetailView.as_view(), name="delivery"),
    path("deliveries/<id:pk>/cancel", merchant.DeliveryCancelView.as_view(), name="delivery-cancel"),
    path("deliveries/<id:pk>/pickup", driver.PickupView.as_view(), name="delivery-pickup"),
    path("deliveries/<id:pk>/deliver", driver.DeliverView.as_view(), name="delivery-deliver"),
    path("deliveries/<id:pk>/fail", driver.FailView.as_view(), name="delivery-fail"),
    path("deliveries/<id:pk>/release", driver.ReleaseView.as_view(), name="delivery-release"),
    path("driver/me", driver.MeView.as_view(), name="driver-me"),
    path("driver/availability", driver.AvailabilityView.as_view(), name="driver-availability"),
    path("driver/locations", drivers_api.LocationsView.as_view(), name="driver-locations"),
    path("driver/offers", driver.OfferListView.as_view(), name="driver-offers"),
    path("driver/deliveries", driver.DriverDeliveryListView.as_view(), name="driver-deliveries"),
    path("offers/<id:pk>/accept", driver.OfferAcceptView.as_view(), name="offer-accept"),
    path("offers/<id:pk>/decline", driver.OfferDeclineView.as_view(), name="offer-decline"),
    path("ops/deliveries/<id:pk>/reassign", ops.ReassignView.as_view(), name="ops-reassign"),
    path("ops/escalations", ops.EscalationListView.as_view(), name="ops-escalations"),
    path("ops/escalations/<id:pk>/acknowledge", ops.EscalationAcknowledgeView.as_view(), name="ops-ack"),
    path("ops/escalations/<id:pk>/resolve", ops.EscalationResolveView.as_view(), name="ops-resolve"),
    path("ops/zones", ops.ZoneListView.as_view(), name="ops-zones"),
    path("track/<str:token>", tracking.TrackingView.as_view(), name="track"),
]
