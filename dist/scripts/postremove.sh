#!/bin/sh
# goreplica package, after its files are removed (deb postrm, rpm %postun):
# systemd forgets the unit; a purge (deb) also removes the configuration
# (dpkg removes goreplica.toml itself), the unit's environment file and
# the logs.
set -e
case "$1" in
purge)
	rm -f /etc/goreplica/goreplica.env
	rmdir /etc/goreplica 2>/dev/null || true
	rm -rf /var/log/goreplica
	;;
esac
case "$1" in
remove|purge|0)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	;;
esac
