package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/meshnode/meshnode/node/localapi"
	"github.com/meshnode/meshnode/node/mapcache"
)

// cacheUse is the cached peer map the node runs from until the
// coordinator's welcome replaces it.
type cacheUse struct {
	since, updated time.Time
}

// mapCachePath is the cache file in the state directory.
func (e *Engine) mapCachePath() string {
	return filepath.Join(e.cfg.StateDir, mapcache.FileName)
}

// startMapCache comes up from the cached peer map, when there is a good
// one, and starts keeping the cache (peer_map_cache); with the cache off it
// removes a cache left from before. It runs before the stream starts, so
// the coordinator's welcome, whenever it comes, replaces the cached map.
func (e *Engine) startMapCache(ctx context.Context, wg *sync.WaitGroup, link *coordLink) {
	path := e.mapCachePath()
	if !e.cfg.PeerMapCache {
		if err := os.Remove(path); err == nil {
			e.log.Info("peer map cache removed (peer_map_cache is off)", "file", path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			e.log.Warn("peer map cache not removed (peer_map_cache is off)", "err", err)
		}
		return
	}
	owner := mapcache.Owner{Node: e.priv.Public(), Coordinator: e.state.CoordinatorKey, Overlay: e.state.routes()}
	e.mapCache = mapcache.NewWriter(path, owner, e.peers.All, mapcache.DefaultTiming(), e.log.With("component", "peermap"))
	link.cache = e.mapCache
	link.live = e.mapLive
	m, updated, err := mapcache.Load(path, owner)
	switch {
	case errors.Is(err, mapcache.ErrNone):
		e.log.Debug("no cached peer map", "file", path)
	case err != nil:
		e.log.Warn("coming up without the cached peer map; peers are known once the coordinator answers", "err", err)
	default:
		link.apply(m.Welcome())
		// The stream has not started: no other goroutine reads held yet.
		link.held = m.Held
		e.fromCache.Store(&cacheUse{since: time.Now(), updated: updated})
		age := time.Since(updated).Round(time.Second)
		e.log.Info("running from the cached peer map until the coordinator answers", "peers", e.peers.Len(), "updated", updated.UTC().Format(time.RFC3339), "age", age)
		e.progress(fmt.Sprintf("running from the cached peer map (%d peers, from %s ago) until the coordinator answers", e.peers.Len(), age))
	}
	wg.Go(func() { e.mapCache.Run(ctx) })
}

// mapLive is called with each welcome: the coordinator's map replaces the
// cached one.
func (e *Engine) mapLive() {
	if use := e.fromCache.Swap(nil); use != nil {
		e.log.Info("the coordinator's peer map replaces the cached one", "ran_from_cache", time.Since(use.since).Round(time.Second))
	}
}

// forgetMapCache removes the cached map once the coordinator refused this
// node itself (err, from the stream): removed from the mesh, it must not
// come up with its peers again.
func (e *Engine) forgetMapCache(err error) {
	if e.mapCache == nil {
		return
	}
	if rerr := e.mapCache.Remove(); rerr != nil {
		e.log.Warn("cached peer map not removed; remove it by hand", "file", e.mapCachePath(), "err", rerr)
		return
	}
	e.log.Info("cached peer map removed: the coordinator refused this node", "file", e.mapCachePath(), "reason", err)
}

// cachedMapStatus is the cached map the node runs from, nil when none.
func (e *Engine) cachedMapStatus() *localapi.CachedMap {
	use := e.fromCache.Load()
	if use == nil {
		return nil
	}
	return &localapi.CachedMap{
		Since:   use.since.UTC().Format(time.RFC3339),
		Updated: use.updated.UTC().Format(time.RFC3339),
		File:    e.mapCachePath(),
	}
}
