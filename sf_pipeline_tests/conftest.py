pytest_plugins = [
    "sf_pipeline_tests.pg_fixtures",
    "sf_pipeline_tests.devorg_fixtures",
    "sf_pipeline_tests.pipeline_fixtures",
]
