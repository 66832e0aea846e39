#!/bin/sh
# goreplica package, after install or upgrade (deb postinst "configure OLD",
# rpm %post N): systemd learns of the unit, which is neither enabled nor
# started; on an upgrade a running unit is restarted on the new binary.
set -e
case "$1" in
configure) [ -n "$2" ] && upgrade=yes || upgrade=no ;;
[0-9]*) [ "$1" -gt 1 ] && upgrade=yes || upgrade=no ;;
*) exit 0 ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	if [ "$upgrade" = yes ]; then
		systemctl try-restart goreplica.service || true
	fi
fi
if [ "$upgrade" = no ]; then
	echo "goreplica: edit /etc/goreplica/goreplica.toml, run goreplica init -c /etc/goreplica/goreplica.toml, then: systemctl enable --now goreplica"
fi
