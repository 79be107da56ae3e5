"""App-side instrumentation: one call sets up OTLP export and the installed OpenInference instrumentors."""
