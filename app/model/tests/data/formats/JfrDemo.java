import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.locks.ReentrantLock;

/** Burns CPU in named methods, allocates, and contends a monitor and a lock, for a few seconds. */
public class JfrDemo {
    static final Object MONITOR = new Object();
    static final ReentrantLock LOCK = new ReentrantLock();
    static volatile long sink;

    static long fib(int n) {
        return n < 2 ? n : fib(n - 1) + fib(n - 2);
    }

    static void burnFib() {
        sink += fib(27);
    }

    static void sortArrays(Random random) {
        int[] values = new int[20_000];
        for (int i = 0; i < values.length; i++) values[i] = random.nextInt();
        Arrays.sort(values);
        sink += values[0];
    }

    static List<byte[]> allocate() {
        List<byte[]> chunks = new ArrayList<>();
        for (int i = 0; i < 200; i++) chunks.add(new byte[1024 + i]);
        chunks.add(new byte[2 << 20]);
        return chunks;
    }

    static void holdMonitor() throws InterruptedException {
        synchronized (MONITOR) {
            Thread.sleep(15);
        }
    }

    static void holdLock() throws InterruptedException {
        LOCK.lock();
        try {
            Thread.sleep(15);
        } finally {
            LOCK.unlock();
        }
    }

    public static void main(String[] args) throws Exception {
        long end = System.currentTimeMillis() + Long.parseLong(args.length > 0 ? args[0] : "3000");
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < 4; t++) {
            boolean monitor = t % 2 == 0;
            Thread contender = new Thread(() -> {
                try {
                    while (System.currentTimeMillis() < end) {
                        if (monitor) holdMonitor(); else holdLock();
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }, "contender-" + t);
            threads.add(contender);
            contender.start();
        }
        Thread waiter = new Thread(() -> {
            try (java.net.ServerSocket server = new java.net.ServerSocket(0)) {
                server.setSoTimeout((int) Math.max(1, end - System.currentTimeMillis()));
                server.accept();
            } catch (java.io.IOException expected) {
                // The timeout ends the wait.
            }
        }, "native-waiter");
        threads.add(waiter);
        waiter.start();
        Random random = new Random(42);
        while (System.currentTimeMillis() < end) {
            burnFib();
            sortArrays(random);
            sink += allocate().size();
        }
        for (Thread thread : threads) thread.join();
    }
}
