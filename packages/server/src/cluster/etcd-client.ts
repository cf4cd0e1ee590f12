import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, retry } from 'cockatiel';
import { Etcd3, isRecoverableError } from 'etcd3';

/** An etcd user and its password (etcd with authentication enabled). */
export interface EtcdAuth {
  username: string;
  password: string;
}

/**
 * An etcd client for an instance. The etcd3 default opens a per-host circuit breaker for 5 s
 * after three failures, so for 5 s after etcd comes back every call is refused (a JOIN to a new
 * room could not pin its shard). Here the breaker tries again after half a second, and a watch
 * reconnects at least every second (the default backoff grows to 30 s, so a configuration change
 * made after an etcd restart could go unapplied that long). With `auth`, the client logs in
 * (and again whenever etcd says its token is no longer valid, e.g. after an etcd restart).
 */
export function createEtcdClient(hosts: string[], auth?: EtcdAuth): Etcd3 {
  const recoverable = handleWhen(isRecoverableError);
  return new Etcd3({
    hosts,
    dialTimeout: 2000,
    ...(auth ? { auth } : {}),
    faultHandling: {
      host: () => circuitBreaker(recoverable, { halfOpenAfter: 500, breaker: new ConsecutiveBreaker(3) }),
      global: retry(recoverable, { maxAttempts: 3 }),
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }).next(),
    },
  });
}
