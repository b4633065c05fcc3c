tcpdump --immediate-mode -U -i any -y LINUX_SLL -w any-interface-sll1.pcap tcp port 5672
