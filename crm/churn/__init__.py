"""Churn early warning: who is about to leave, why, early enough to act (docs/CRM.md, "Churn").

    python -m crm churn train    --store URL [--day D] [--model-dir DIR]
    python -m crm churn score    --store URL [--day D] [--model-dir DIR]
    python -m crm churn evaluate --store URL [--day D] [--json PATH] [--truth truth.npz]

- features.py  per household and feature day, computed in ClickHouse (18.16 and chdb), and labels
- model.py     LightGBM + Platt calibration on a later day; TreeSHAP contributions
- reasons.py   contributions -> sentences ("viewing down 62 % on the previous three weeks")
- train.py     feature days split by time; artifact.py publishes versions atomically
- scoring.py   churn_scores, risk.churn_* tags, churn_alerts
- evaluate.py  out-of-time AUC / PR-AUC / lift / Brier against fair rules and the simulator's truth
"""
