-- luvicorn.proxy: the trust list of --forwarded-allow-ips, the Forwarded grammar, and the choice of
-- client and scheme. Socket-free.
local proxy = require("luvicorn.proxy")

local function hex(s)
  return s and (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

local function trust(list)
  return assert(proxy.parse(list))
end

describe("luvicorn.proxy", function()
  describe("address", function()
    it("reads IPv4 as its IPv4-mapped IPv6 form", function()
      assert.are.equal("00000000000000000000ffff7f000001", hex(proxy.address("127.0.0.1")))
      assert.are.equal(proxy.address("127.0.0.1"), proxy.address("::ffff:127.0.0.1"))
      assert.are.equal(proxy.address("127.0.0.1"), proxy.address("0:0:0:0:0:FFFF:7F00:1"))
    end)

    it("reads every textual form of an IPv6 address to the same bytes", function()
      local one = proxy.address("::1")
      assert.are.equal("00000000000000000000000000000001", hex(one))
      assert.are.equal(one, proxy.address("0:0:0:0:0:0:0:1"))
      assert.are.equal(one, proxy.address("0000:0000:0000:0000:0000:0000:0000:0001"))
      assert.are.equal(one, proxy.address("0::0:1"))
      assert.are.equal(proxy.address("2001:db8::1"), proxy.address("2001:DB8:0:0::0:1"))
      assert.are.equal("00000000000000000000000000000000", hex(proxy.address("::")))
      assert.are.equal("20010db8000000000000000000000000", hex(proxy.address("2001:db8::")))
      assert.are.equal("00000000000000000000000001020304", hex(proxy.address("::1.2.3.4")))
      assert.are.equal("fe800000000000000000000000000001", hex(proxy.address("fe80::1%eth0")))
    end)

    it("refuses what is not an address", function()
      for _, s in ipairs({ "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.-4", " 1.2.3.4", "a.b.c.d",
        "localhost", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", ":::1", "1::2::3", "12345::", "::g", ":1::",
        "1:", "::1.2.3", "::1.2.3.4:5", "1.2.3.4::", "fe80::1%", "[::1]", "::ffff:1.2.3.256" }) do
        assert.is_nil(proxy.address(s), s)
      end
      assert.is_nil(proxy.address(nil))
      assert.is_nil(proxy.address(42))
    end)
  end)

  describe("parse", function()
    it("takes an array or one comma-separated string, with blanks around entries", function()
      local t = trust(" 10.0.0.1 , ::1,")
      assert.is_true(t:trusts("10.0.0.1"))
      assert.is_true(t:trusts("0:0:0:0:0:0:0:1"))
      assert.is_false(t:trusts("10.0.0.2"))
      assert.is_true(trust({ "192.168.1.1" }):trusts("192.168.1.1"))
      assert.is_false(trust({}):trusts("127.0.0.1"))
    end)

    it("names the option and the entry for an invalid one", function()
      local cases = {
        { "foo", "invalid entry 'foo': expected an IPv4 or IPv6 address" },
        { "127.0.0.1,example.com", "invalid entry 'example.com'" },
        { "10.0.0.0/33", "invalid entry '10.0.0.0/33': the prefix length must be a number from 0 to 32" },
        { "fd00::/129", "invalid entry 'fd00::/129': the prefix length must be a number from 0 to 128" },
        { "10.0.0.0/", "invalid entry '10.0.0.0/'" },
        { "10.0.0.0/x", "invalid entry '10.0.0.0/x'" },
        { "10.0.0.0/-1", "invalid entry '10.0.0.0/-1'" },
        { "/8", "invalid entry '/8'" },
        { "10.0.0.1/8", "invalid entry '10.0.0.1/8': address bits are set beyond the prefix length" },
        { "fd00::1/8", "invalid entry 'fd00::1/8': address bits are set" },
        { "unix", "invalid entry 'unix'" },
        { "unix:/run/x.sock", "invalid entry 'unix:/run/x.sock'" },
        { "**", "invalid entry '**'" },
        { "[::1]", "invalid entry '[::1]'" },
      }
      for _, c in ipairs(cases) do
        local t, err = proxy.parse(c[1])
        assert.is_nil(t, c[1])
        assert.are.equal("--forwarded-allow-ips: ", err:sub(1, 23), c[1])
        assert.truthy(err:find(c[2], 1, true), err)
      end
      local t, err = proxy.parse({ "127.0.0.1", 5 })
      assert.is_nil(t)
      assert.are.equal("--forwarded-allow-ips: entry 2 is a number, not a string", err)
      t, err = proxy.parse(true)
      assert.is_nil(t)
      assert.are.equal("--forwarded-allow-ips: expected a list of addresses, got boolean", err)
    end)
  end)

  describe("matching", function()
    it("matches IPv4 and IPv6 networks, IPv4-mapped peers included", function()
      local t = trust("10.0.0.0/8,192.168.1.128/25,fd00::/8,2001:db8:1::/48,172.16.0.1")
      for _, a in ipairs({ "10.0.0.0", "10.255.255.255", "::ffff:10.1.2.3", "192.168.1.128", "192.168.1.255",
        "fd00::1", "fdff:ffff::", "2001:db8:1:ffff::1", "172.16.0.1", "::ffff:172.16.0.1" }) do
        assert.is_true(t:trusts(a), a)
      end
      for _, a in ipairs({ "11.0.0.0", "9.255.255.255", "192.168.1.127", "fc00::1", "fe00::1", "2001:db8:2::1",
        "172.16.0.2", "::1", "127.0.0.1", "garbage", "" }) do
        assert.is_false(t:trusts(a), a)
      end
    end)

    it("matches prefixes that are not whole bytes and the extremes /0 and /32, /128", function()
      local t = trust("100.64.0.0/10")
      assert.is_true(t:trusts("100.127.255.255"))
      assert.is_false(t:trusts("100.128.0.0"))
      assert.is_true(trust("0.0.0.0/0"):trusts("203.0.113.9"))
      assert.is_false(trust("0.0.0.0/0"):trusts("2001:db8::1"))
      assert.is_true(trust("::/0"):trusts("2001:db8::1"))
      assert.is_true(trust("1.2.3.4/32"):trusts("1.2.3.4"))
      assert.is_false(trust("1.2.3.4/32"):trusts("1.2.3.5"))
      assert.is_true(trust("::1/128"):trusts("0:0:0:0:0:0:0:1"))
    end)

    it("reads hop texts with ports and brackets the same way", function()
      local t = trust("::1,10.0.0.1")
      assert.is_true(t:trusts("[::1]:4711"))
      assert.is_true(t:trusts("10.0.0.1:80"))
      assert.is_false(t:trusts("[10.0.0.1]"))
    end)

    it("* trusts every peer and every hop; unix: only peers on a Unix socket", function()
      local all = trust("*")
      assert.is_true(all:trusts("203.0.113.9"))
      assert.is_true(all:trusts("unknown"))
      assert.is_true(all:peer_trusted({ "2001:db8::1", 1 }, { "::", 80 }))
      assert.is_true(all:peer_trusted(nil, { "/run/app.sock", nil }))
      local unix = trust("unix:")
      assert.is_true(unix:peer_trusted(nil, { "/run/app.sock", nil }))
      assert.is_true(unix:peer_trusted(nil, nil)) -- an inherited Unix socket (--fd) has no path
      assert.is_false(unix:peer_trusted({ "127.0.0.1", 1 }, { "127.0.0.1", 80 }))
      -- a TCP connection whose peer address could not be read is not a Unix peer
      assert.is_false(unix:peer_trusted(nil, { "127.0.0.1", 80 }))
      local local_only = trust("127.0.0.1,::1")
      assert.is_false(local_only:peer_trusted(nil, { "/run/app.sock", nil }))
      assert.is_true(local_only:peer_trusted({ "::ffff:127.0.0.1", 5 }, { "::", 80 }))
      assert.is_true(local_only:peer_trusted({ "::1", 5 }, { "::1", 80 }))
    end)

    it("keeps its memory bounded whatever hop texts come in", function()
      local t = trust("10.0.0.0/8")
      for i = 1, 10000 do t:trusts("10.0." .. (i % 256) .. "." .. (i // 256)) end
      assert.is_true(t.ncache <= 4096)
      assert.is_true(t:trusts("10.0.0.1"))
    end)
  end)

  describe("node", function()
    it("reads addresses with and without ports", function()
      local h, p, ip = proxy.node("192.0.2.43")
      assert.are.same({ "192.0.2.43" }, { h, p })
      assert.are.equal(proxy.address("192.0.2.43"), ip)
      h, p = proxy.node("192.0.2.43:4711")
      assert.are.same({ "192.0.2.43", 4711 }, { h, p })
      h, p = proxy.node("[2001:db8:cafe::17]:4711")
      assert.are.same({ "2001:db8:cafe::17", 4711 }, { h, p })
      h, p = proxy.node("[2001:db8:cafe::17]")
      assert.are.same({ "2001:db8:cafe::17" }, { h, p })
      h, p = proxy.node("2001:db8::1")
      assert.are.same({ "2001:db8::1" }, { h, p })
      h, p = proxy.node("10.0.0.1:_port")
      assert.are.same({ "10.0.0.1", 0 }, { h, p })
    end)

    it("gives nothing for unknown, obfuscated identifiers and garbage", function()
      for _, s in ipairs({ "unknown", "UNKNOWN", "_hidden", "_SEVKISEK", "example.com", "1.2.3.4:", "1.2.3.4:65536",
        "1.2.3.4:port", "[::1", "[::1]x", "[::1]:", "[1.2.3.4]", "", "[]", "1.2.3.4:5:6" }) do
        assert.is_nil(proxy.node(s), s)
      end
    end)
  end)

  describe("parse_forwarded", function()
    it("reads pairs, case-insensitive names, quoted strings and several elements", function()
      local els = proxy.parse_forwarded('For="[2001:db8:cafe::17]:4711";PROTO=https;host=example.com;by=_proxy1, '
        .. "for=192.0.2.60;proto=http;by=203.0.113.43")
      assert.are.same({
        { ["for"] = "[2001:db8:cafe::17]:4711", proto = "https", host = "example.com", by = "_proxy1" },
        { ["for"] = "192.0.2.60", proto = "http", by = "203.0.113.43" },
      }, els)
    end)

    it("reads bare addresses with ports and IPv6 addresses, which RFC 7239 wants quoted", function()
      assert.are.same({ { ["for"] = "[2001:db8::1]:80" }, { ["for"] = "2001:db8::2" }, { ["for"] = "1.2.3.4:5" } },
        proxy.parse_forwarded("for=[2001:db8::1]:80, for=2001:db8::2, for=1.2.3.4:5"))
    end)

    it("unescapes quoted-pairs and keeps commas and semicolons inside quotes", function()
      local els = proxy.parse_forwarded('for="a\\"b\\\\c";host="x,y;z", for=1.2.3.4')
      assert.are.same({ { ["for"] = 'a"b\\c', host = "x,y;z" }, { ["for"] = "1.2.3.4" } }, els)
    end)

    it("allows blanks around elements and pairs, empty elements and empty pairs", function()
      local els = proxy.parse_forwarded(" , for=1.1.1.1 ;proto=https ; , ,;for=2.2.2.2;; ,")
      assert.are.same({ { ["for"] = "1.1.1.1", proto = "https" }, { ["for"] = "2.2.2.2" } }, els)
    end)

    it("reads several field lines given as an array or joined with newlines", function()
      local a = proxy.parse_forwarded({ "for=1.1.1.1", "for=2.2.2.2, for=3.3.3.3" })
      local b = proxy.parse_forwarded("for=1.1.1.1\nfor=2.2.2.2, for=3.3.3.3")
      assert.are.same(a, b)
      assert.are.equal(3, #a)
      assert.are.equal("3.3.3.3", a[3]["for"])
    end)

    it("marks malformed elements and still reads the ones on their right", function()
      local cases = {
        { 'for="1.1.1.1, for=2.2.2.2', { { bad = true }, { ["for"] = "2.2.2.2" } } },
        { "for=1.1.1.1;for=9.9.9.9, for=2.2.2.2", { { ["for"] = "1.1.1.1", bad = true }, { ["for"] = "2.2.2.2" } } },
        { "for, for=2.2.2.2", { { bad = true }, { ["for"] = "2.2.2.2" } } },
        { "for=, for=2.2.2.2", { { bad = true }, { ["for"] = "2.2.2.2" } } },
        { "for = 1.1.1.1, for=2.2.2.2", { { bad = true }, { ["for"] = "2.2.2.2" } } },
        { "for=[::1]:80?, for=2.2.2.2", { { ["for"] = "[::1]:80", bad = true }, { ["for"] = "2.2.2.2" } } },
        { "for=a/b, for=2.2.2.2", { { ["for"] = "a", bad = true }, { ["for"] = "2.2.2.2" } } },
        { 'for="x"y, for=2.2.2.2', { { ["for"] = "x", bad = true }, { ["for"] = "2.2.2.2" } } },
        { 'for="x\\', { { bad = true } } },
      }
      for _, c in ipairs(cases) do
        assert.are.same(c[2], proxy.parse_forwarded(c[1]), c[1])
      end
      -- a broken quote on one line cannot swallow the next line
      assert.are.same({ { bad = true }, { ["for"] = "2.2.2.2" } }, proxy.parse_forwarded('for="1.1.1.1\nfor=2.2.2.2'))
    end)

    it("never raises on random input", function()
      math.randomseed(7239)
      local alphabet = { "for", "proto", "=", ";", ",", '"', "\\", " ", "\t", "[", "]", ":", "1.2.3.4", "::1",
        "_x", "unknown", "https", "\n", "\0", "\255", "by", "host" }
      local t = trust("1.2.3.4,::1")
      for _ = 1, 3000 do
        local parts = {}
        for i = 1, math.random(0, 16) do parts[i] = alphabet[math.random(#alphabet)] end
        local s = table.concat(parts)
        local els = proxy.parse_forwarded(s)
        assert.is_table(els)
        local client, scheme = proxy.resolve(t, { "1.2.3.4", 1 }, "http", s, s, s)
        assert.is_true(client == nil or (type(client[1]) == "string" and math.type(client[2]) == "integer"))
        assert.is_true(scheme == "http" or scheme == "https", scheme)
      end
    end)
  end)

  describe("resolve", function()
    local peer = { "10.0.0.5", 40000 }
    local t = trust("10.0.0.0/8,fd00::/8")

    local function client_of(...)
      local c, s = proxy.resolve(t, peer, "http", ...)
      return c, s
    end

    it("takes the rightmost untrusted X-Forwarded-For hop, with port 0", function()
      assert.are.same({ "203.0.113.7", 0 }, (client_of(nil, "198.51.100.1, 203.0.113.7, 10.1.1.1, fd00::2")))
      assert.are.same({ "203.0.113.7", 0 }, (client_of(nil, "203.0.113.7")))
      -- several field lines arrive joined with commas
      assert.are.same({ "203.0.113.7", 0 }, (client_of(nil, "198.51.100.1,203.0.113.7,10.1.1.1")))
    end)

    it("takes the leftmost hop when every hop is trusted", function()
      assert.are.same({ "10.9.9.9", 0 }, (client_of(nil, "10.9.9.9, 10.1.1.1")))
    end)

    it("takes the leftmost hop under *", function()
      local c = proxy.resolve(trust("*"), peer, "http", nil, "198.51.100.1, 203.0.113.7, 10.1.1.1")
      assert.are.same({ "198.51.100.1", 0 }, c)
    end)

    it("reads ports and brackets in X-Forwarded-For", function()
      assert.are.same({ "203.0.113.7", 8443 }, (client_of(nil, "203.0.113.7:8443, 10.1.1.1")))
      assert.are.same({ "2001:db8::7", 8443 }, (client_of(nil, "[2001:db8::7]:8443")))
      assert.are.same({ "2001:db8::7", 0 }, (client_of(nil, "2001:db8::7")))
    end)

    it("gives a nil client when the chosen hop is not an address", function()
      local c, s = client_of(nil, "198.51.100.1, unknown, 10.1.1.1", "https")
      assert.is_nil(c)
      assert.are.equal("https", s)
      assert.is_nil((client_of(nil, "_hidden")))
      assert.is_nil((client_of(nil, "10.1.1.1, not-an-ip")))
    end)

    it("keeps the peer when X-Forwarded-For has no hops", function()
      assert.are.equal(peer, (client_of(nil, " , ,")))
      assert.are.equal(peer, (client_of(nil, nil, "https")))
    end)

    it("takes X-Forwarded-Proto for the chosen hop, else the rightmost value", function()
      local _, s = client_of(nil, "203.0.113.7, 10.1.1.1", "https, http")
      assert.are.equal("https", s)
      _, s = client_of(nil, "203.0.113.7, 198.51.100.1, 10.1.1.1", "https, http")
      assert.are.equal("http", s)
      _, s = client_of(nil, "203.0.113.7", "http, https")
      assert.are.equal("https", s)
      _, s = client_of(nil, nil, " HTTPS ")
      assert.are.equal("https", s)
      _, s = client_of(nil, nil, "wss")
      assert.are.equal("https", s)
      _, s = client_of(nil, nil, "ws")
      assert.are.equal("http", s)
      _, s = proxy.resolve(t, peer, "https", nil, nil, "ftp")
      assert.are.equal("https", s)
      _, s = client_of(nil, nil, "")
      assert.are.equal("http", s)
    end)

    it("takes the client, its port and its proto from the same Forwarded element", function()
      local c, s = client_of('for=192.0.2.1;proto=http, for="[2001:db8::1]:4711";proto=https, for=10.0.0.2;proto=http')
      assert.are.same({ "2001:db8::1", 4711 }, c)
      assert.are.equal("https", s)
      c, s = client_of('for="192.0.2.60:_obf";proto=HTTPS')
      assert.are.same({ "192.0.2.60", 0 }, c)
      assert.are.equal("https", s)
    end)

    it("takes the proto of the nearest element on the right when the chosen one has none", function()
      local c, s = client_of("for=192.0.2.1, for=10.0.0.2;proto=https")
      assert.are.same({ "192.0.2.1", 0 }, c)
      assert.are.equal("https", s)
      -- a proto on the left of the chosen element came from the untrusted side
      c, s = client_of("for=198.51.100.9;proto=https, for=192.0.2.1, for=10.0.0.2")
      assert.are.same({ "192.0.2.1", 0 }, c)
      assert.are.equal("http", s)
    end)

    it("treats unknown, obfuscated and malformed elements as untrusted hops with no client", function()
      for _, f in ipairs({ "for=unknown", "for=_hidden", "for=bogus", "proto=https", 'for="1.1.1.1;x' }) do
        local c, s = client_of("for=192.0.2.1, " .. f .. ", for=10.0.0.2;proto=https")
        assert.is_nil(c, f)
        assert.are.equal("https", s, f)
      end
    end)

    it("keeps the peer when no Forwarded element has for=", function()
      local c, s = client_of("proto=https;host=example.com")
      assert.are.equal(peer, c)
      assert.are.equal("https", s)
    end)

    it("prefers X-Forwarded-* over Forwarded, which a proxy may pass on from the client", function()
      local c, s = client_of("for=192.0.2.1;proto=http", "203.0.113.7", "https")
      assert.are.same({ "203.0.113.7", 0 }, c)
      assert.are.equal("https", s)
      c, s = client_of("for=192.0.2.1;proto=https", "203.0.113.7", nil)
      assert.are.same({ "203.0.113.7", 0 }, c)
      assert.are.equal("http", s)
      c, s = client_of("for=192.0.2.1;proto=https", nil, "http")
      assert.are.same(peer, c)
      assert.are.equal("http", s)
      c, s = client_of("for=192.0.2.1;proto=https", nil, nil)
      assert.are.same({ "192.0.2.1", 0 }, c)
      assert.are.equal("https", s)
    end)
  end)
end)
