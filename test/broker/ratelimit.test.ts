/** Token buckets (take n, refund, waitMs) and the per-address key used for CONNECT attempts. */
import t from 'tap';
import { TokenBuckets, addressKey } from '../../broker/ratelimit.ts';

t.test('take n tokens, refund, wait', async (t) => {
  let now = 0;
  const b = new TokenBuckets({ perSecond: 10, burst: 20 }, () => now);
  t.ok(b.take('a', 15));
  t.notOk(b.take('a', 6), 'not enough left: nothing taken');
  t.ok(b.take('a', 5));
  t.equal(b.waitMs('a', 10), 1000, '10 tokens come back in 1 s');
  b.refund('a', 3);
  t.ok(b.take('a', 3), 'refunded tokens can be spent');
  b.refund('a', 100);
  t.notOk(b.take('a', 21), 'never above the burst');
  now += 500;
  t.ok(b.take('b', 20), 'keys are independent');
});

t.test('address keys: IPv4, IPv4-mapped, IPv6 /64', async (t) => {
  t.equal(addressKey('203.0.113.7'), '203.0.113.7');
  t.equal(addressKey('::ffff:203.0.113.7'), '203.0.113.7', 'IPv4-mapped is the IPv4 address');
  t.equal(addressKey('2001:db8:1:2::1'), '2001:db8:1:2::/64');
  t.equal(addressKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd'), '2001:db8:1:2::/64', 'same /64, same key');
  t.equal(addressKey('2001:0db8:0001:0002:0:0:0:9'), '2001:db8:1:2::/64', 'leading zeros do not matter');
  t.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64');
  t.equal(addressKey('::1'), '0:0:0:0::/64');
  t.equal(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64', 'zone id dropped');
  t.equal(addressKey(undefined), 'unknown');
});
