#include <stdio.h>
static long leaf(long n) { long s = 0; for (long i = 0; i < n; i++) s += i * i; return s; }
static long middle(long n) { return leaf(n) + leaf(n / 2); }
static long other(long n) { return leaf(n * 3); }
int main(void) { long t = 0; for (int i = 0; i < 20; i++) { t += middle(1000); t += other(500); } printf("%ld\n", t); return 0; }
