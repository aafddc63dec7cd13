package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// partitionNet carries the routes between the nodes of a test cluster
// through proxies it can cut, so that a node is cut off from the others
// while it still runs and answers (a real network partition, on loopback).
// Each node has one proxy in front of its route port, which it advertises
// (cluster_advertise) and the others list in their routes: every route
// connection, those configured and those a node learns of, goes through the
// proxy of the node it reaches. Which node dialled it is read from the
// route protocol's INFO line, where the dialling server gives its name.
type partitionNet struct {
	t     *testing.T
	mu    sync.Mutex
	cut   map[string]bool
	conns map[*routeConn]struct{}
	wg    sync.WaitGroup
}

// routeConn is one route connection through a proxy: dialer's to
// listener's.
type routeConn struct {
	dialer, listener string
	in, out          net.Conn
}

func newPartitionNet(t *testing.T) *partitionNet {
	pn := &partitionNet{t: t, cut: map[string]bool{}, conns: map[*routeConn]struct{}{}}
	t.Cleanup(pn.wg.Wait)
	return pn
}

// proxy listens on a port of its own for routes to node's route port at
// addr (which need not listen yet), and returns its address.
func (pn *partitionNet) proxy(node, addr string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pn.t.Fatal(err)
	}
	pn.t.Cleanup(func() {
		ln.Close()
		pn.mu.Lock()
		for c := range pn.conns {
			c.close()
		}
		pn.mu.Unlock()
	})
	pn.wg.Add(1)
	go func() {
		defer pn.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			pn.wg.Add(1)
			go func() {
				defer pn.wg.Done()
				pn.carry(node, addr, in)
			}()
		}
	}()
	return ln.Addr().String()
}

// carry passes one connection to node's route port, unless the dialer or
// node is cut off. The dialer's bytes are held until its INFO names it.
func (pn *partitionNet) carry(node, addr string, in net.Conn) {
	pn.mu.Lock()
	cut := pn.cut[node]
	pn.mu.Unlock()
	if cut {
		in.Close()
		return
	}
	out, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		in.Close()
		return
	}
	c := &routeConn{listener: node, in: in, out: out}
	go func() { _, _ = io.Copy(in, out) }() // the listener's INFO first
	held, dialer, err := readDialerName(in)
	if err != nil {
		c.close()
		return
	}
	c.dialer = dialer
	pn.mu.Lock()
	if pn.cut[node] || pn.cut[dialer] {
		pn.mu.Unlock()
		c.close()
		return
	}
	pn.conns[c] = struct{}{}
	pn.mu.Unlock()
	if _, err := out.Write(held); err == nil {
		_, _ = io.Copy(out, in)
	}
	c.close()
	pn.mu.Lock()
	delete(pn.conns, c)
	pn.mu.Unlock()
}

func (c *routeConn) close() {
	c.in.Close()
	c.out.Close()
}

// readDialerName reads the dialling server's first lines (CONNECT, then
// INFO) until its INFO, and returns what it read and the server's name.
func readDialerName(in net.Conn) ([]byte, string, error) {
	_ = in.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer in.SetReadDeadline(time.Time{})
	var buf []byte
	chunk := make([]byte, 4096)
	for len(buf) < 64<<10 {
		n, err := in.Read(chunk)
		buf = append(buf, chunk[:n]...)
		for _, line := range bytes.Split(buf, []byte("\r\n")) {
			rest, ok := bytes.CutPrefix(line, []byte("INFO "))
			if !ok {
				continue
			}
			var info struct {
				Name string `json:"server_name"`
			}
			if json.Unmarshal(rest, &info) == nil && info.Name != "" {
				return buf, info.Name, nil
			}
		}
		if err != nil {
			return nil, "", err
		}
	}
	return nil, "", errors.New("no INFO in the first 64 KiB")
}

// cutOff cuts node off: its route connections are closed, and new ones to
// or from it refused, until heal.
func (pn *partitionNet) cutOff(node string) {
	pn.mu.Lock()
	defer pn.mu.Unlock()
	pn.cut[node] = true
	for c := range pn.conns {
		if c.dialer == node || c.listener == node {
			c.close()
			delete(pn.conns, c)
		}
	}
}

// heal lets node's routes through again.
func (pn *partitionNet) heal(node string) {
	pn.mu.Lock()
	defer pn.mu.Unlock()
	delete(pn.cut, node)
}

// carried counts the route connections through the proxies now, to or
// from node.
func (pn *partitionNet) carried(node string) int {
	pn.mu.Lock()
	defer pn.mu.Unlock()
	n := 0
	for c := range pn.conns {
		if c.dialer == node || c.listener == node {
			n++
		}
	}
	return n
}
