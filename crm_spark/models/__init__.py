"""Customer models: churn classifiers, customer value regressors, segmentations and anomaly scores."""
