package netlab

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
)

// maxCoordinators bounds StartCoordinators: each takes a control port and
// two STUN ports above the first coordinator's, and a metrics and a web
// page port (on the namespace's loopback) from metricsPort and uiPort.
const (
	maxCoordinators = 8
	metricsPort     = 9500
	uiPort          = metricsPort + maxCoordinators
)

// StartCoordinators runs n coordinators on CoordinatorHost that share one
// PostgreSQL database (database, a postgres:// URL reachable from that
// namespace) and so serve one mesh. Coordinator i (from 0) is
// coordinator-(i+1), with a data directory (and certificate) of its own,
// its control API on CoordinatorPort+i and STUN on STUNPort+2i and
// STUNAltPort+2i, metrics on metricsPort+i and the web page on uiPort+i;
// args are further flags for each. Each is its own
// process: Kill ends one by PID, as a crash.
func (l *Lab) StartCoordinators(ctx context.Context, n int, database string, args ...string) ([]*Coordinator, error) {
	if err := l.needBin(); err != nil {
		return nil, err
	}
	if n < 1 || n > maxCoordinators {
		return nil, fmt.Errorf("%d coordinators: want 1 to %d", n, maxCoordinators)
	}
	if database == "" {
		return nil, errors.New("coordinators sharing a mesh need a postgres:// database")
	}
	ns, err := l.CoordinatorHost(ctx)
	if err != nil {
		return nil, err
	}
	cs := make([]*Coordinator, n)
	for i := range cs {
		name := fmt.Sprintf("coordinator-%d", i+1)
		cs[i] = &Coordinator{NS: ns, lab: l, name: name, dataDir: filepath.Join(l.dir, name),
			port: CoordinatorPort + i, stun: STUNPort + 2*i, stunAlt: STUNAltPort + 2*i,
			database: database, args: append([]string{
				"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", metricsPort+i),
				"--ui-listen", fmt.Sprintf("127.0.0.1:%d", uiPort+i),
			}, args...)}
		if err := cs[i].Start(ctx); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

// Name is the coordinator's process name (coordinator, or coordinator-N
// of StartCoordinators).
func (c *Coordinator) Name() string { return c.name }
