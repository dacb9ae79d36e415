"""`gps-monitor notify`: alarms from ``alarms/v1/...`` pushed to 企业微信, 钉钉 and 飞书 robots,
generic webhooks, e-mail and SMS, chosen by subscription rules (issue 9, section 3)."""
