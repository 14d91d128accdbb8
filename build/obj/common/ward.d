build/obj/common/ward.o: common/ward.c common/ward.h
common/ward.h:
