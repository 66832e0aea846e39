package rig

import (
	"context"
	"errors"
	"os"

	"github.com/goreplica/goreplica/pgserver"
)

// Servers is what most benchmarks start with: a working directory (removed
// by Close), the goreplica binary built into it, and a durable master and
// slave server.
type Servers struct {
	Dir, Bin      string
	Master, Slave *pgserver.Server
}

// StartServers makes the directory (readable by the servers' user), builds
// goreplica, and starts the master with database MasterDB and the slave
// with database slaveDB (none when empty), each with BaseSettings plus its
// extra settings.
func StartServers(ctx context.Context, prefix string, masterExtra, slaveExtra map[string]string, slaveDB string) (_ *Servers, err error) {
	s := &Servers{}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Close())
		}
	}()
	if s.Dir, err = os.MkdirTemp("", prefix); err != nil {
		return nil, err
	}
	if err = os.Chmod(s.Dir, 0o755); err != nil {
		return nil, err
	}
	Logf("building goreplica")
	if s.Bin, err = Build(ctx, s.Dir); err != nil {
		return nil, err
	}
	Logf("starting master and slave servers (durable)")
	if s.Master, err = Start(ctx, MasterDB, masterExtra); err != nil {
		return nil, err
	}
	if s.Slave, err = Start(ctx, slaveDB, slaveExtra); err != nil {
		return nil, err
	}
	return s, nil
}

// Close stops the servers and removes the directory.
func (s *Servers) Close() error {
	var errs []error
	for _, srv := range []*pgserver.Server{s.Slave, s.Master} {
		if srv != nil {
			errs = append(errs, srv.Close())
		}
	}
	if s.Dir != "" {
		errs = append(errs, os.RemoveAll(s.Dir))
	}
	return errors.Join(errs...)
}
