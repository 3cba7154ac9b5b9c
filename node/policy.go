package node

import (
	"errors"

	"github.com/meshnode/meshnode/internal/wire"
	"github.com/meshnode/meshnode/node/filter"
)

// SetFilter applies an access policy compiled for this node (what the
// coordinator sends; tests set one directly): nil, or AllowAll, removes
// it. A filter that is not valid, or older than the one in force
// (filter.ErrStale), is refused and the one in force stays.
func (e *Engine) SetFilter(f *wire.Filter) error { return e.filter.Set(f) }

// filterLink takes the filters of the coordinator's messages, on the
// stream's goroutine: the welcome's (nil: no policy) and a peers message's
// (nil: unchanged). A bad filter is logged once per version.
type filterLink struct {
	e *Engine
	// bad is the version of the last filter refused as invalid.
	bad    uint64
	badSet bool
}

func (l *filterLink) apply(f *wire.Filter, welcome bool) {
	if f == nil && !welcome {
		return
	}
	was := l.e.filter.Status().Active
	err := l.e.SetFilter(f)
	switch {
	case errors.Is(err, filter.ErrStale):
		l.e.log.Debug("access policy ignored", "err", err)
	case err != nil:
		if !l.badSet || l.bad != f.Version {
			l.e.log.Error("access policy refused; the one in force stays", "version", f.Version, "err", err)
			l.bad, l.badSet = f.Version, true
		}
	case f == nil || f.AllowAll:
		if was {
			l.e.log.Info("access policy removed: every member reaches every other")
		}
	default:
		l.e.log.Info("access policy in force", "version", f.Version, "rules", len(f.Rules))
	}
}
