// Creates Kafka topics for tools/kafka-broker topics, in one JVM start:
//
//   java -cp 'LIBS/*' tools/kafka/CreateTopics.java BOOTSTRAP NAME[:PARTITIONS]...
//
// Runs as a Java 11+ single-file source program against the cached Kafka jars
// (kafka-clients' Admin API), so nothing has to be built. It is idempotent: a
// topic that already exists is fine, unless it has a different partition count
// from the one asked for, which is reported as an error. A topic given without
// a partition count gets the broker's num.partitions.
//
// After creating, it waits until every partition of every named topic has a
// leader, so a client that starts right after this returns does not see
// UNKNOWN_TOPIC_OR_PARTITION / LEADER_NOT_AVAILABLE.
//
// Exit status: 0 all topics exist and are ready, 1 something failed, 2 bad
// arguments. Messages go to stderr.

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;

public class CreateTopics {
    private static final long READY_TIMEOUT_MS = 30_000;

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: CreateTopics BOOTSTRAP NAME[:PARTITIONS][:compact]...");
            System.exit(2);
        }
        String bootstrap = args[0];

        // name -> requested partition count (empty: broker default)
        Map<String, Optional<Integer>> wanted = new LinkedHashMap<>();
        // names to create compacted (cleanup.policy=compact): NAME[:PARTITIONS]:compact
        java.util.Set<String> compacted = new java.util.HashSet<>();
        for (int i = 1; i < args.length; i++) {
            String spec = args[i];
            if (spec.endsWith(":compact")) {
                spec = spec.substring(0, spec.length() - ":compact".length());
                compacted.add(spec.contains(":") ? spec.substring(0, spec.lastIndexOf(':')) : spec);
            }
            int colon = spec.lastIndexOf(':');
            String name = colon < 0 ? spec : spec.substring(0, colon);
            Optional<Integer> partitions = Optional.empty();
            if (colon >= 0) {
                try {
                    partitions = Optional.of(Integer.parseInt(spec.substring(colon + 1)));
                } catch (NumberFormatException e) {
                    partitions = Optional.of(0);
                }
                if (partitions.get() < 1) {
                    System.err.println("bad topic spec '" + spec + "': partitions must be a positive integer");
                    System.exit(2);
                }
            }
            wanted.put(name, partitions);
        }

        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "streamrec-create-topics");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");

        boolean ok = true;
        try (Admin admin = Admin.create(props)) {
            List<NewTopic> newTopics = new ArrayList<>();
            // Replication factor left to the broker's default.replication.factor:
            // 1 on a single broker, 3 on a cluster (tools/kafka-broker start --nodes).
            wanted.forEach((name, partitions) -> {
                NewTopic topic = new NewTopic(name, partitions, Optional.empty());
                if (compacted.contains(name))
                    topic.configs(Map.of("cleanup.policy", "compact"));
                newTopics.add(topic);
            });

            Map<String, org.apache.kafka.common.KafkaFuture<Void>> results =
                admin.createTopics(newTopics).values();
            for (Map.Entry<String, org.apache.kafka.common.KafkaFuture<Void>> e : results.entrySet()) {
                try {
                    e.getValue().get();
                    System.err.println("created topic " + e.getKey());
                } catch (ExecutionException ex) {
                    if (ex.getCause() instanceof TopicExistsException) {
                        System.err.println("topic " + e.getKey() + " already exists");
                    } else {
                        System.err.println("cannot create topic " + e.getKey() + ": " + ex.getCause());
                        ok = false;
                    }
                }
            }
            if (!ok) System.exit(1);

            // Wait until all partitions have a leader; check the partition
            // count of topics that already existed.
            long deadline = System.currentTimeMillis() + READY_TIMEOUT_MS;
            while (true) {
                String notReady = null;
                try {
                    Map<String, TopicDescription> descs =
                        admin.describeTopics(wanted.keySet()).allTopicNames().get();
                    for (Map.Entry<String, Optional<Integer>> w : wanted.entrySet()) {
                        TopicDescription d = descs.get(w.getKey());
                        int have = d.partitions().size();
                        if (w.getValue().isPresent() && w.getValue().get() != have) {
                            System.err.println("topic " + w.getKey() + " exists with " + have
                                + " partitions, not the " + w.getValue().get() + " asked for");
                            System.exit(1);
                        }
                        for (TopicPartitionInfo p : d.partitions()) {
                            if (p.leader() == null || p.leader().isEmpty()) {
                                notReady = w.getKey() + "-" + p.partition();
                            }
                        }
                    }
                } catch (ExecutionException ex) {
                    // Metadata not propagated to the broker yet: retry.
                    if (!(ex.getCause() instanceof UnknownTopicOrPartitionException)) throw ex;
                    notReady = String.valueOf(ex.getCause().getMessage());
                }
                if (notReady == null) break;
                if (System.currentTimeMillis() > deadline) {
                    System.err.println("timed out waiting for a leader of " + notReady);
                    System.exit(1);
                }
                Thread.sleep(100);
            }
        }
    }
}
