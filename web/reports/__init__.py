"""Evidence reports (one alarm, or one vehicle over a window) and KPI reports (issue 5).

evidence.py builds the report data and its integrity digest; pdf.py, excel.py and export.py
render it; charts.py draws the offline track map and the speed chart; kpi.py computes the
assessment KPIs (联网联控考核).
"""
