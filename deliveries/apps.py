from django.apps import AppConfig


class DeliveriesConfig(AppConfig):
    name = "deliveries"

    def ready(self) -> None:
        from core.metrics import register_scrape_collector
        from deliveries.metrics import collect_backlog

        register_scrape_collector(collect_backlog)
