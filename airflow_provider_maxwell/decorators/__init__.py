"""Task decorators of the provider (`@task.maxwell`)."""
