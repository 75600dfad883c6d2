/* Does fallocate(FALLOC_FL_KEEP_SIZE) ahead of the writes, in another thread, make the
 * writing thread's writev into a tmpfs file cheaper? (tried for file_roll, not kept: bench/README.md)
 *
 *   gcc -O2 -o /tmp/wb bench/prealloc/writev_fallocate.c -lpthread
 *   /tmp/wb /dev/shm/wb-test MODE MIB [AHEAD_MIB [STEP_MIB]]
 *
 * MODE 0: writev only; 1: a helper thread keeps AHEAD MiB (64) allocated past what was
 * written, STEP MiB (8) per call; 2: the whole file allocated before the writes. Writes
 * MIB MiB in 4 MiB writev calls; prints the writing thread's CPU (CLOCK_THREAD_CPUTIME_ID),
 * its voluntary context switches (waits, e.g. on the inode lock), the wall time of the
 * writes, the helper's CPU, the final size and allocated bytes. Removes the file.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>

static int fd; static long total, chunk = 4L<<20, ahead, step = 8L<<20;
static atomic_long written, allocated; static atomic_int done;
static double tcpu(void){struct timespec t;clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static double wall(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static double helper_cpu;
static void *helper(void *a){
  (void)a; double c0=tcpu();
  while(!done){
    long w=written, al=allocated;
    if(al < w+ahead && al < total){
      long n = step; if(al+n>total) n=total-al;
      if(fallocate(fd, FALLOC_FL_KEEP_SIZE, al, n)) {perror("fallocate"); exit(1);}
      allocated = al+n;
    } else usleep(200);
  }
  helper_cpu=tcpu()-c0; return 0;
}
int main(int argc,char**argv){
  const char*path=argv[1]; int mode=atoi(argv[2]); /* 0 plain, 1 helper ahead, 2 prealloc all first */
  total = atol(argv[3])<<20; ahead = (argc>4?atol(argv[4]):64)<<20; if(argc>5) step=atol(argv[5])<<20;
  char *buf = aligned_alloc(4096, chunk); memset(buf,'x',chunk);
  for(long i=99;i<chunk;i+=100) buf[i]='\n';
  unlink(path); fd=open(path,O_WRONLY|O_CREAT|O_TRUNC,0644);
  pthread_t th; double pre=0;
  if(mode==2){double c=tcpu(); fallocate(fd,FALLOC_FL_KEEP_SIZE,0,total); pre=tcpu()-c;}
  if(mode==1){pthread_create(&th,0,helper,0); while(allocated< (ahead<total?ahead:total)) usleep(100);}
  double w0=wall(), c0=tcpu();
  struct iovec iov[2]={{buf,chunk/2},{buf+chunk/2,chunk/2}};
  for(long off=0; off<total; off+=chunk){
    if(writev(fd,iov,2)!=chunk){perror("writev");return 1;}
    written=off+chunk;
  }
  double c=tcpu()-c0, w=wall()-w0;
  struct rusage ru; getrusage(RUSAGE_THREAD,&ru);
  done=1; if(mode==1) pthread_join(th,0);
  struct stat st; fstat(fd,&st);
  printf("vcsw=%ld ivcsw=%ld ", ru.ru_nvcsw, ru.ru_nivcsw);
  printf("step=%ldM mode=%d writer_cpu=%.3f s wall=%.3f s helper_cpu=%.3f prealloc_cpu=%.3f size=%ld blocks*512=%ld\n",
         step>>20,mode,c,w,helper_cpu,pre,(long)st.st_size,(long)st.st_blocks*512);
  close(fd); unlink(path); return 0;
}
