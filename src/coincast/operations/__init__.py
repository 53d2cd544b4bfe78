"""The operations layer: one coin's build, the hourly tick and replay, the train stage's decisions, the prediction
log and its scoring, publishing a whole build, data versions (DVC) and cron. The top of the package: only the
CLI, the dashboard and the notebooks import it."""
