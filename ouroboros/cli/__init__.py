"""The ``ouro`` command line."""


def main() -> None:
    from .app import make_app

    make_app()(prog_name="ouro")
