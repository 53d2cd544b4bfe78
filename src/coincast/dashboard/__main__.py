"""``python -m coincast.dashboard``: serve the dashboard with Voila (:func:`coincast.dashboard.serve.main`)."""
import sys

from coincast.dashboard.serve import main

sys.exit(main())
